"""Development/demo settings; ``shop.settings.production`` hardens them for deployment."""

from .base import *  # noqa: F403
