"""Log in and log out decide which visitor the browser is (see services.user_login_visitor)."""

from django.contrib import messages
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from shop.events.middleware import visitor_rotate

from .services import user_login_visitor


@receiver(user_logged_in)
def visitor_on_login(sender, request, user, **kwargs):
    if request is not None and getattr(request, "visitor_id", None) is not None:
        request.visitor_id = user_login_visitor(visitor_id=request.visitor_id, user=user)


@receiver(user_logged_out)
def visitor_on_logout(sender, request, user, **kwargs):
    # The next person at this browser starts with a fresh visitor: no cart, history or orders,
    # and no unread flash message of the previous user's ("Order K7QX-... placed").
    if request is None:
        return
    if hasattr(request, "visitor_id"):
        visitor_rotate(request)
    if hasattr(request, "_messages"):
        for _ in messages.get_messages(request):
            pass
