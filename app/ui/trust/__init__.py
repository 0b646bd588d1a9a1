"""Who may do what: sign-in and people, the audit trail, the golden set and deploy gate."""
