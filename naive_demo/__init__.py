"""
The naive counters people reach for, served as demonstrations (#5, #13).

A Django app of its own, apart from the product: settings install it and
counterproject/urls.py routes it only with COUNTERS_NAIVE_DEMO=1.
"""
