"""The default model bundle (``default/``), shipped as package data so that a plain install classifies."""
