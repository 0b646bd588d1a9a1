"""The Inspect workspace: the line session in the app, its views, log, review and PLC."""
