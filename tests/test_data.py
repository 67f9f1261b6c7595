import datasets
import pytest

from mvld_hf.data import with_anchor_language


def _rows():
    return datasets.Dataset.from_dict({
        "image_id": ["a", "a", "a", "a", "b", "b"],
        "english": ["red circle", "red circle", "a red circle", "a red circle", "blue square", "blue square"],
        "caption": ["red circle", "roter Kreis", "a red circle", "ein roter Kreis", "blue square", "blaues Quadrat"],
        "language": ["en", "de", "en", "de", "en", "de"],
    })


def test_anchor_language_takes_the_parallel_caption_of_the_same_image_and_variant():
    rows = _rows()
    assert with_anchor_language(rows, "en") is rows
    anchored = with_anchor_language(rows, "de")
    assert list(anchored["english"]) == ["roter Kreis", "roter Kreis", "ein roter Kreis", "ein roter Kreis",
                                         "blaues Quadrat", "blaues Quadrat"]
    assert list(anchored["caption"]) == list(rows["caption"])  # the student still reads every language


def test_anchor_language_errors_name_the_cause():
    with pytest.raises(ValueError, match="no 'zh' captions"):
        with_anchor_language(_rows(), "zh")
    missing = _rows().select([0, 1, 2, 4, 5])  # the German row of variant "a red circle" is gone
    with pytest.raises(ValueError, match="row 2 .*no parallel 'de' caption"):
        with_anchor_language(missing, "de")
    with pytest.raises(Exception, match="image_id"):
        with_anchor_language(_rows().remove_columns("image_id"), "de")
