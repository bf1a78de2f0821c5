"""The web status page (``marrowmap web``): see :mod:`marrowmap.web.app`."""
