"""A small HTML tree for the view tests, on the standard library's html.parser.

Tests ask the document what a browser would see (an element by id, its classes, attributes and
text) instead of matching markup with regular expressions. Parsing is strict about nesting:
an end tag that closes something other than the open element fails the test, so broken
templates are caught too.
"""

import re
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Element:
    """One element: ``tag``, ``attrs`` (a dict), ``children`` (elements and strings)."""

    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def __repr__(self):
        return f"<{self.tag} {self.attrs}>"

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    def text(self) -> str:
        """The text inside, whitespace collapsed (as a reader would take it)."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return re.sub(r"\s+", " ", " ".join(parts)).strip()

    def iter(self):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag=None, cls=None, **attrs) -> list["Element"]:
        """Elements below this one with ``tag``, class ``cls`` and ``attrs`` (``True``: present)."""
        found = []
        for element in self.iter():
            if tag and element.tag != tag:
                continue
            if cls and cls not in element.classes:
                continue
            names = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
            if all(
                (name in element.attrs) if value is True else element.attrs.get(name) == value
                for name, value in names.items()
            ):
                found.append(element)
        return found

    def find(self, tag=None, cls=None, **attrs) -> "Element | None":
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None

    def one(self, tag=None, cls=None, **attrs) -> "Element":
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one {tag or ''}.{cls or ''} {attrs}, found {found}"
        return found[0]

    def by_id(self, element_id) -> "Element":
        return self.one(id=element_id)

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_startendtag(self, tag, attrs):
        self.open.children.append(Element(tag, attrs, self.open))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.open.tag == tag, f"</{tag}> closes <{self.open.tag}> {self.open.attrs}"
        self.open = self.open.parent

    def handle_data(self, data):
        self.open.children.append(data)


def parse(markup: str) -> Element:
    """Return the document (or fragment) tree of ``markup``; every element must be closed."""
    builder = TreeBuilder()
    builder.feed(markup)
    builder.close()
    assert builder.open is builder.root, f"<{builder.open.tag}> {builder.open.attrs} not closed"
    return builder.root


def headings(document: Element) -> list[tuple[int, str]]:
    """Return the page's headings in order, as (level, text)."""
    return [
        (int(element.tag[1]), element.text())
        for element in document.iter()
        if re.fullmatch(r"h[1-6]", element.tag)
    ]
