"""The Plant workspace: the project's stations, what each line runs, deploying to one line."""
