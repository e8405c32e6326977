"""``hyperscene report``: one self-contained HTML page about a store version.

The page holds the store's summary and, as inline SVG drawn here, the plots a reader needs to judge
a compression: cluster sizes, near-duplicate similarities against the threshold, tokens per record
and compression by level, a 2-D map of the hyperwords, the largest near-duplicate groups and a few
documents' scene trees. It fetches nothing: no scripts, fonts or images from anywhere, so it opens
offline and can be mailed or archived as one file. Every text from the store is escaped.

    command.py  the command's options and run
    reading.py  what the page shows, read from the store (figures from transforms/report_data.py)
    svg.py      the plots as inline SVG
    page.py     the HTML page: style, sections, scene trees
    text.py     one-line texts, escaping and number labels
"""

from hyperscene.pipelines.report.command import build_parser, report, run
from hyperscene.pipelines.report.reading import gather
from hyperscene.pipelines.report.page import render_html

# The CLI runs the command as hyperscene.pipelines.report.run.
__all__ = ["build_parser", "gather", "render_html", "report", "run"]
