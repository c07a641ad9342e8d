"""jobtitles: classify job titles into a seniority level and a job area, torch-free.

>>> from jobtitles import Classifier
>>> clf = Classifier.load()            # the default bundle (models/default or $JOBTITLES_MODEL)
>>> clf.predict(["Sr. Data Engineer – Remote £70k"])[0].level
'Sr Specialist'
"""

__version__ = "0.1.0"

from jobtitles.classifier import Classifier, Prediction  # noqa: E402

__all__ = ["Classifier", "Prediction", "__version__"]
