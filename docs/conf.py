"""Sphinx configuration of the qsilicon documentation (``make docs``).

Pages are MyST Markdown; the API reference is autodoc on the installed ``qsilicon`` package
(numpydoc-style docstrings through napoleon); the CLI reference is generated from the parser
(``qsilicon.flow.cli.build_parser``) by sphinx-argparse.  The build runs with ``-W --keep-going``:
every warning is an error, and no warning is suppressed here.
"""

from __future__ import annotations

from sphinx.util.inspect import signature as inspect_signature
from sphinx.util.inspect import stringify_signature

import qsilicon

project = "qsilicon"
author = "the qsilicon authors"
copyright = "the qsilicon authors, Apache-2.0"
release = qsilicon.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: anchors for headings down to ###, so that pages can link to sections.
myst_heading_anchors = 3

# autodoc: real imports (everything is installed with the package), members in source order,
# type hints in the signatures.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# The docstrings are numpydoc style; the components' docstrings have a "Members" section for their
# Amaranth ports, rendered like "Parameters".
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = [("Members", "params_style")]

html_theme = "furo"
html_title = f"qsilicon {release}"


def _keep_attribute_docstrings(app, what, name, obj, options, lines):
    """Napoleon reads the first line of an attribute, data or property docstring as
    ``type: description`` (a Google-style convention), so "The array: int8 activations ..." would
    render with the type "The array".  This code base gives types by annotation and writes such
    first lines as sentences: an empty RST comment in front keeps them whole.  Runs before
    napoleon (priority 400 < 500)."""
    if what in {"attribute", "data", "property"} and any(line.strip() for line in lines):
        lines[:0] = ["..", ""]


def _class_signature(app, what, name, obj, options, signature, return_annotation):
    """Class signatures as the constructors take them.

    Amaranth's ``Elaboratable.__new__(cls, *args, src_loc_at=0, **kwargs)`` hides every
    component's constructor from autodoc, which prefers ``__new__`` to ``__init__``: show the
    ``__init__`` signature (the parameters the docstring documents) instead.  A dataclass field
    with a ``default_factory`` shows as ``= <factory>``, which the Python domain cannot parse (the
    whole parameter list would print as one plain-text blob): show ``= ...`` instead."""
    if what != "class" or not signature:
        return None
    if "src_loc_at" in signature:
        sig = inspect_signature(obj.__init__, bound_method=True)
        if "src_loc_at" not in sig.parameters:
            signature = stringify_signature(sig, show_return_annotation=False, unqualified_typehints=True)
    return signature.replace("<factory>", "..."), return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _class_signature)
    app.connect("autodoc-process-docstring", _keep_attribute_docstrings, priority=400)
