"""The browser check's page checks that need no browser: a figure shown twice on a page."""

import base64

from check_book import duplicate_images  # tests/browser is on sys.path (pytest's rootdir-less import)

PNG_A = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"figure A" * 20).decode()
PNG_B = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"figure B" * 20).decode()


def page(main: str, outside: str = "") -> str:
    return (f"<html><body><header>{outside}</header><main id='main-content'><article class='bd-article'>"
            f"<h1>A chapter</h1>{main}</article></main><footer>{outside}</footer></body></html>")


def img(src: str) -> str:
    return f'<div class="cell_output"><img alt="" src="{src}"></div>'


def test_a_page_showing_one_figure_twice_fails():
    twice = page(img(f"data:image/png;base64,{PNG_A}") + "<p>text</p>" + img(f"data:image/png;base64,{PNG_A}"))
    (problem,) = duplicate_images(twice)
    assert problem.startswith("one figure shown 2 times: data:image/png;base64,")


def test_a_page_with_distinct_figures_passes():
    assert duplicate_images(page(img(f"data:image/png;base64,{PNG_A}") + img(f"data:image/png;base64,{PNG_B}"))) == []
    assert duplicate_images(page(img("_images/a.png") + img("_images/b.png"))) == []


def test_a_logo_in_header_and_footer_is_not_a_figure():
    assert duplicate_images(page(img("_images/a.png"), outside=img("_static/logo.png"))) == []


def test_one_figure_under_two_file_names_or_one_file_twice_fails():
    files = {"_images/a.png": b"same bytes", "_images/copy.png": b"same bytes", "_images/b.png": b"other"}
    (problem,) = duplicate_images(page(img("_images/a.png") + img("_images/copy.png") + img("_images/b.png")),
                                  read=files.get)
    assert problem == "one figure shown 2 times: _images/a.png, _images/copy.png"
    (problem,) = duplicate_images(page(img("_images/b.png") + img("_images/b.png")))  # no reader: by src
    assert problem == "one figure shown 2 times: _images/b.png"


def test_inline_and_file_copies_of_one_figure_are_the_same_figure():
    data = b"\x89PNG\r\n\x1a\n" + b"figure A" * 20  # what PNG_A encodes
    problems = duplicate_images(page(img(f"data:image/png;base64,{PNG_A}") + img("_images/a.png")),
                                read={"_images/a.png": data}.get)
    assert len(problems) == 1 and "2 times" in problems[0]
