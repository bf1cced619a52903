"""The one feature module: training and serving both build their rows here.

spec      feature names and order per stage; rows filled by name
event     an event, its entries and field as requests carry them (no pandas)
history   form and calendar history, read point in time
snapshot  the saved snapshot: events, entry lists, the event's field, feature rows

Import from the submodules: this package imports nothing, so that importing one
pandas-free piece does not load pandas with the snapshot.
"""
