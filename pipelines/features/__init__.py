"""The one feature module: training and serving both build their rows here.

spec      feature names and order per stage; rows filled by name
event     an event, its entries and field as requests carry them (no pandas)
history   form and calendar history, read point in time
snapshot  the saved snapshot: its data, built, saved and loaded
lookups   its calendar, entry lists, the event's field, names and ids
rows      its feature rows, form, standings and pole history

Import from the submodules: this package imports nothing, so that importing one
pandas-free piece does not load pandas with the snapshot.
"""
