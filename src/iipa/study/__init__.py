"""The 2AFC psychophysical study (paper §4.4): storage, web app, analysis.

``create_study`` samples pairs into a database, ``create_app`` serves the participant
flow, ``analyze`` + ``write_report`` reproduce Table 4 and the Fig. 9 categories.
"""

from iipa.study.plan import create_study
from iipa.study.storage import Store

__all__ = ["Store", "create_study"]
