"""The pilot: a small, budgeted measurement of the candidate approaches on a team's own data (issue #20)."""
