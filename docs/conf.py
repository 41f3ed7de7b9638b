"""Sphinx configuration for etcdsync's documentation (built by ``make docs`` with warnings as errors)."""

from __future__ import annotations

import etcdsync

project = "etcdsync"
author = "etcdsync developers"
copyright = "2026, etcdsync developers"
release = etcdsync.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# No intersphinx: the build must work offline (CI has no route to docs.python.org), so references to
# other projects' objects are plain text; nitpicky still checks every reference into etcdsync itself.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(trio|attrs|ssl|collections|typing|enum|os|pathlib|subprocess)\..*"),
    (r"py:mod", r"etcdsync\.client"),
    (r"py:class", r"(bytes|str|int|float|bool|None|Exception|BaseException|type|object)"),
    (r"py:class", r"(Sequence|Mapping|Iterable|AsyncIterator|Metadata|KeyValue|_E|OpResponse|AnyOp)"),
    (r"py:class", r"(random|contextlib|abc|types)\..*"),
    (r"py:class", r"(AbstractAsyncContextManager|AbstractContextManager|TracebackType|Self|Ts|T)"),
    (r"py:class", r"etcdsync\.(client|testing)\._.*"),
    (r"py:.*", r"etcdsync\._.*"),
]

autodoc_member_order = "bysource"
# Constructors of handles users must not build take private arguments: keep them out of the docs.
autodoc_class_signature = "separated"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
