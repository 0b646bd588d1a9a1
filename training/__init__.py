"""The trainer: torch, never Qt. Runs as a child process of the app or headless on a server."""
