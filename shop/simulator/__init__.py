"""A blind shopper simulator: shoppers with hidden tastes browse the running storefront over HTTP.

It sees only what a browser sees (HTML pages, the public catalogue API, its own cookies) and never
imports Django, the shop's models or the database; it never reads an experiment arm, a model
version or a score. ``manage.py simulate`` drives it; ``run.simulate`` is the library entry point.
"""
