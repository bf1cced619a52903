"""The one feature module: training and serving both build their rows here.

spec      feature names and order per stage; rows filled by name
history   form and calendar history, read point in time
snapshot  the saved snapshot: events, entry lists, the event's field, feature rows
"""

from pipelines.features.snapshot import Entry, EventContext, EventField, FeatureSnapshot
from pipelines.features.spec import STAGE1, STAGE2, FeatureMismatch, FeatureSpec

__all__ = [
    "STAGE1",
    "STAGE2",
    "Entry",
    "EventContext",
    "EventField",
    "FeatureMismatch",
    "FeatureSnapshot",
    "FeatureSpec",
]
