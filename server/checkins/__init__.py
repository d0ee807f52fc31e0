"""Daily check-ins and streaks."""
