import pytest
import torch

from mvld_hf.evaluation.vqa import format_option, vqa_accuracy, vqa_scores


def test_format_option():
    assert format_option("What colour is the car?", "red") == "What colour is the car? red"
    assert format_option("", "red") == "red"
    assert format_option("Q?", "A", template="Question: {question} Answer: {option}") == "Question: Q? Answer: A"
    assert format_option("Q?", "A", template="{option}") == "A"
    with pytest.raises(ValueError, match="fields"):
        format_option("Q?", "A", template="{question} {answer}")


def hand_built():
    # 3 questions, 3 options each, 2-D embeddings chosen so the winner is obvious
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    options = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],   # q0: option 0 wins
        [[1.0, 0.0], [0.5, 0.5], [0.1, 2.0]],    # q1: option 2 wins (cos .999)
        [[1.0, 0.0], [0.0, 1.0], [2.0, 2.1]],    # q2: option 2 wins (cos .9997)
    ])
    return image, options


def test_hand_built_accuracy_per_language():
    image, options = hand_built()
    res = vqa_accuracy(image, options, torch.tensor([0, 2, 1]), languages=["en", "sw", "sw"])
    assert res == {"en": {"accuracy": 1.0}, "sw": {"accuracy": 0.5},
                   "all": {"accuracy": pytest.approx(2 / 3)}, "mean": {"accuracy": 0.75}}
    assert vqa_accuracy(image, options, [0, 2, 2]) == {"all": {"accuracy": 1.0}}


def test_scores_are_cosine_similarities():
    image, options = hand_built()
    scores = vqa_scores(image, options)
    assert scores[0].tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert scores[2, 0].item() == pytest.approx(2 ** -0.5)
    raw = vqa_scores(image, options, normalize=False)
    assert raw[2, 2].item() == pytest.approx(4.1)


def test_ties_count_as_wrong():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    options = torch.tensor([[[1.0, 1.0], [1.0, -1.0]],   # exact tie between the two options
                            [[0.0, 1.0], [0.0, 1.0]]])   # identical options
    res = vqa_accuracy(image, options, [0, 1])
    assert res["all"]["accuracy"] == 0.0
    # a collapsed text encoder (all options equal) scores 0, whatever the answer position
    collapsed = torch.ones(2, 4, 2)
    assert vqa_accuracy(image, collapsed, [0, 0])["all"]["accuracy"] == 0.0


def test_variable_number_of_options_with_offsets():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    flat = torch.tensor([
        [0.9, 0.1], [0.0, 1.0],                       # q0: 2 options, 0 wins
        [1.0, 0.0], [0.2, 1.0], [0.0, 1.0], [1, 1],   # q1: 4 options, 2 wins
        [0.5, 0.5],                                   # q2: 1 option, always right
    ])
    offsets = torch.tensor([0, 2, 6, 7])
    scores = vqa_scores(image, flat, option_offsets=offsets)
    assert scores.shape == (3, 4)
    assert torch.isinf(scores[0, 2:]).all() and torch.isinf(scores[2, 1:]).all()
    res = vqa_accuracy(image, flat, [0, 2, 0], option_offsets=offsets, languages=["a", "b", "b"])
    assert res["all"]["accuracy"] == 1.0
    res = vqa_accuracy(image, flat, [1, 2, 0], option_offsets=offsets)
    assert res["all"]["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(IndexError, match=r"answers\[0\] = 2 but question 0 has 2 options"):
        vqa_accuracy(image, flat, [2, 2, 0], option_offsets=offsets)


def test_argument_errors():
    image, options = hand_built()
    with pytest.raises(ValueError, match="one entry per question"):
        vqa_accuracy(image, options, [0, 1])
    with pytest.raises(IndexError, match="has 3 options"):
        vqa_accuracy(image, options, [0, 1, 3])
    with pytest.raises(ValueError, match="dimensions differ"):
        vqa_accuracy(image, torch.randn(3, 3, 5), [0, 1, 2])
    with pytest.raises(ValueError, match="option_offsets"):
        vqa_accuracy(image, options, [0, 1, 2], option_offsets=[0, 3, 6, 9])  # 3-D with offsets
    with pytest.raises(ValueError, match="end at the number of option rows"):
        vqa_accuracy(image, torch.randn(8, 2), [0, 1, 2], option_offsets=[0, 3, 6, 9])
    with pytest.raises(ValueError, match="question 1 has no options"):
        vqa_accuracy(image, torch.randn(6, 2), [0, 0, 0], option_offsets=[0, 3, 3, 6])
    with pytest.raises(ValueError, match="languages has 2 entries"):
        vqa_accuracy(image, options, [0, 1, 2], languages=["en", "de"])
