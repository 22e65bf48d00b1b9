# TEMPORARY STUB (lead's testing; replaced by wt-ratings)
def add_simulate_arguments(parser): pass
def run_simulate(args, stdout): return 0
