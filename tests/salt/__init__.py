"""Tests of file tailing through Salt (salt_states/): the path policy at each boundary,
the formula, the execution module and the agent, through a real master and minion."""
