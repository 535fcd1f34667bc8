"""The run's report: its content, as markdown, HTML and in the Prefect dashboard, with its figures."""
