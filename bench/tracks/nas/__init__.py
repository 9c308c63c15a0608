"""The NAS track: architecture search strategies compared at equal budgets, over seeds, against an exhaustive table."""
