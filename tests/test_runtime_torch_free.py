"""The runtime never imports torch, directly or through a dependency."""

import subprocess
import sys



def test_classification_in_a_fresh_interpreter_does_not_import_torch(bundle_dir):
    code = (
        "import sys\n"
        "from jobtitles import Classifier\n"
        f"clf = Classifier.load({str(bundle_dir)!r})\n"
        "p = clf.predict(['Senior Data Engineer', 'Apply now'])\n"
        "assert p[0].valid and not p[1].valid\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'jobtitles.train')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_cli_classify_does_not_import_torch(bundle_dir):
    code = (
        "import sys, runpy\n"
        "sys.argv = ['jobtitles', 'classify', '--model', %r]\n"
        "import io\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b'Nurse\\n'))\n"
        "try:\n    runpy.run_module('jobtitles.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('HEAVY %%s' %% [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    ) % str(bundle_dir)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in res.stderr, res.stderr
    assert '"level"' in res.stdout
