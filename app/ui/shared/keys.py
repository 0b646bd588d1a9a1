"""Keys the main window binds (see window_dialogs.SHORTCUTS): never a workspace's
settable key (the capture key, the trigger key)."""

WINDOW_KEYS = ("F1", "Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4", "Ctrl+5", "Ctrl+W", "Ctrl+Q", "Ctrl+Shift+O")
