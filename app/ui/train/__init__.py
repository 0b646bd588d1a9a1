"""The Train workspace: the trainer child process, its progress chart and summary card."""
