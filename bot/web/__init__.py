"""The shared web shell: templates, interface texts (nl/en), the base page, common JS and CSS.

Page packages (``bot/console``, ``bot/supervisor``, ``bot/cx``, ``bot/accounts``) render their
pages with :func:`render_page`; their templates extend ``base.html``.
"""

from bot.web.i18n import MissingTextError, texts, translate
from bot.web.render import render_page, templates

__all__ = ["MissingTextError", "render_page", "templates", "texts", "translate"]
