"""The catalog of labtrain: projects, members, tasks, completions, selection and snapshots."""
