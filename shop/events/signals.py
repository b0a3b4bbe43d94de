from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from .services import visitor_attach_user, visitor_get_or_create


@receiver(user_logged_in)
def attach_visitor_on_login(sender, request, user, **kwargs):
    visitor_id = getattr(request, "visitor_id", None)
    if visitor_id is not None:
        visitor = visitor_get_or_create(visitor_id=visitor_id)
        visitor_attach_user(visitor=visitor, user=user)
