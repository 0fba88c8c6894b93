"""synthetic device family."""
