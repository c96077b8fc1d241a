# Sphinx configuration of the documentation site. `docs/build.py` copies this file, the pages of docs/ and the
# notebooks of nbs/ (their nbdev directives turned into myst-nb cell tags) into _docs/src and builds _docs/html.
# Sphinx + myst-nb: the notebooks run once and their outputs are kept in a jupyter-cache database keyed by their
# code, so a rebuild re-executes only notebooks whose code changed; autodoc writes the API pages from the docstrings.
import os, re

project = "smrnb"
author = "smrnb developers"
copyright = "2026 onwards, smrnb developers"
extensions = ["myst_nb", "sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "nbs/fixtures/**", "data_manifests/**", "results/**", "_include/**", "_extra_static/**"]
html_theme = "sphinx_book_theme"
html_title = "smrnb"
html_favicon = "favicon.svg"
html_context = {"default_mode": "light"}   # without it the theme logs a console error on a first visit
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True, "use_download_button": False}
# MathJax from the jupyter-server-mathjax wheel (build.py links it in): no page loads anything from the internet
html_static_path = ["_extra_static"]
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {"HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web", "imageFont": None}}   # the fonts it ships
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "myst.xref_missing"]

# every notebook runs at its tiny test sizes, its outputs cached by its code (jupyter-cache)
nb_execution_mode = os.environ.get("SMRNB_DOCS_EXECUTE", "cache")
nb_execution_cache_path = os.environ["SMRNB_DOCS_CACHE"]
nb_execution_timeout = 600
nb_execution_raise_on_error = True   # a notebook that fails stops the build: the site never shows a broken notebook
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"


def markdown_code(app, what, name, obj, options, lines):
    "The library's docstrings are Markdown: `code` (a span may wrap a line) becomes an RST literal, escaped when a word follows."
    md = re.compile(r"(?<![`\\w])`([^`]+?)`(?!`)(\w?)")
    text = md.sub(lambda m: m[0] if "\n\n" in m[1] else f"``{m[1]}``" + (f"\\ {m[2]}" if m[2] else ""), "\n".join(lines))
    lines[:] = text.split("\n")

def setup(app):
    app.connect("autodoc-process-docstring", markdown_code)
