"""mkdocs hook: the numpydoc docstrings use Sphinx's roles (:func:`segment`) and
citation marks ([1]_, .. [1]), which mkdocstrings shows as written; on the rendered API
page they become plain code names and citation numbers."""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc):<code>~?(?:[\w.]*\.)?([\w]+)</code>")
_CITE = re.compile(r"\[(\d+)\]_")
_NOTE = re.compile(r"\.\. \[(\d+)\]")


def on_page_content(html: str, page, config, files) -> str:
    """Rewrite the roles and citation marks of the page's rendered docstrings."""
    html = _ROLE.sub(r"<code>\1</code>", html)
    html = _CITE.sub(r"[\1]", html)
    return _NOTE.sub(r"[\1]", html)
