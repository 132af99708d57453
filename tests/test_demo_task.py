"""The demo task: tokenizer, reward, problem split, warm start and its cache, greedy decoding."""

import json

import numpy as np
import pytest
import torch

from entropymon.demo.task import (
    BASE_VOCAB,
    MAX_ANSWER_TOKENS,
    PROMPT_LENGTH,
    Problem,
    all_problems,
    build_model,
    build_tokenizer,
    correctness_reward,
    extract_answer,
    split_problems,
)
from entropymon.demo.warmstart import (
    WarmStartSettings,
    encode_examples,
    greedy_accuracy,
    greedy_completions,
    load_or_warm_start,
    supervised_steps,
    supervised_warm_start,
)
from entropymon.errors import InputError


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_round_trips_every_problem_text(tokenizer):
    for problem in all_problems()[::37]:
        text = problem.prompt + problem.answer
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text)  # one token per character
        assert tokenizer.decode(ids) == text


def test_tokenizer_maps_each_task_character_to_its_own_id(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(char) for char in "0123456789+="]
    assert ids == list(range(3, 15))
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert len(tokenizer) == len(BASE_VOCAB) == 15


def test_large_vocabulary_tokenizer_keeps_task_ids_and_decodes_filler_ids():
    large = build_tokenizer(vocab_size=32_000)
    small = build_tokenizer()
    assert len(large) == 32_000
    assert large("47+38=").input_ids == small("47+38=").input_ids
    assert large.decode([7, 31_999]) == "4<unused_31999>"


def test_tokenizer_rejects_a_vocabulary_smaller_than_the_task():
    with pytest.raises(InputError, match="vocab_size"):
        build_tokenizer(vocab_size=10)


def test_eos_is_skipped_when_decoding_like_trl(tokenizer):
    ids = tokenizer("85", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "85"


@pytest.mark.parametrize(("completion", "expected"), [
    ("85", 1.0), (" 85", 1.0), ("8 5", 1.0), ("856", 0.0), ("8", 0.0), ("85+", 0.0), ("", 0.0), ("58", 0.0),
])
def test_correctness_reward_on_known_completions(completion, expected):
    assert correctness_reward(["47+38="], [completion], answer=["85"]) == [expected]


def test_correctness_reward_scores_each_completion_against_its_own_answer():
    problems = [Problem(10, 10), Problem(99, 99), Problem(47, 38)]
    completions = ["20", "197", "85"]
    rewards = correctness_reward([p.prompt for p in problems], completions, answer=[p.answer for p in problems])
    assert rewards == [float(int(c) == p.a + p.b) for c, p in zip(completions, problems)] == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(("completion", "answer"), [("85", "85"), ("85+1", "85"), ("1 98=", "198"), ("+3", ""), ("", "")])
def test_extract_answer_keeps_the_leading_digits(completion, answer):
    assert extract_answer(completion) == answer


def test_problems_cover_every_two_digit_pair_once():
    problems = all_problems()
    assert len(problems) == 90 * 90
    assert len({(p.a, p.b) for p in problems}) == len(problems)
    assert all(len(p.prompt) == PROMPT_LENGTH for p in problems)
    assert max(len(p.answer) for p in problems) + 1 == MAX_ANSWER_TOKENS  # "198" and the end token


def test_split_is_deterministic_disjoint_and_complete():
    train, heldout = split_problems(seed=3, n_heldout=100)
    again_train, again_heldout = split_problems(seed=3, n_heldout=100)
    assert (train, heldout) == (again_train, again_heldout)
    assert len(heldout) == 100
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) == set(all_problems())
    assert split_problems(seed=4, n_heldout=100)[1] != heldout


def test_split_rejects_an_impossible_heldout_size():
    with pytest.raises(InputError, match="n_heldout"):
        split_problems(seed=0, n_heldout=0)


def test_model_initialisation_is_seeded():
    first, second, other = build_model(seed=1), build_model(seed=1), build_model(seed=2)
    pairs = zip(first.state_dict().values(), second.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def test_teacher_forcing_labels_cover_only_answer_and_end_token(tokenizer):
    problems = [Problem(47, 38), Problem(99, 99)]
    input_ids, labels = encode_examples(tokenizer, problems)
    for row, problem in enumerate(problems):
        labelled = labels[row][labels[row] != -100].tolist()
        assert tokenizer.decode(labelled) == problem.answer + tokenizer.eos_token
        assert tokenizer.decode(input_ids[row, :PROMPT_LENGTH].tolist()) == problem.prompt


def test_greedy_completions_match_transformers_generate(tokenizer):
    model = build_model(seed=5).eval()
    problems = all_problems()[:16]
    prompts = torch.tensor([tokenizer(p.prompt, add_special_tokens=False).input_ids for p in problems])
    generated = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                               max_new_tokens=MAX_ANSWER_TOKENS, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    reference = tokenizer.batch_decode(generated[:, PROMPT_LENGTH:], skip_special_tokens=True)
    assert greedy_completions(model, tokenizer, problems) == reference
    expected = sum(correctness_reward([], reference, [p.answer for p in problems])) / len(problems)
    assert greedy_accuracy(model, tokenizer, problems) == expected


def test_warm_start_is_reproducible_and_lowers_the_loss(tokenizer):
    train, _ = split_problems(seed=0)
    settings = WarmStartSettings(seed=0, steps=40, batch_size=32)
    input_ids, labels = encode_examples(tokenizer, train[:256])
    attention_mask = (input_ids != tokenizer.pad_token_id).long()

    def loss_of(model):
        with torch.no_grad():
            return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.item()

    first = build_model(seed=0)
    before = loss_of(first)
    supervised_warm_start(first, tokenizer, train, settings)
    second = supervised_warm_start(build_model(seed=0), tokenizer, train, settings)
    assert loss_of(first) < 0.6 * before
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_warm_start_stops_at_the_target_accuracy_and_records_the_steps(tmp_path, tokenizer):
    train, heldout = split_problems(seed=0, n_heldout=32)
    reached = WarmStartSettings(seed=0, steps=50, batch_size=8, n_heldout=32, target_accuracy=0.0, check_every=5, n_check=16)
    assert supervised_steps(build_model(seed=0), tokenizer, train, reached) == 5  # the first check passes
    unreachable = WarmStartSettings(seed=0, steps=12, batch_size=8, n_heldout=32, target_accuracy=1.01, check_every=5)
    assert supervised_steps(build_model(seed=0), tokenizer, train, unreachable) == 12  # the step cap
    fixed = WarmStartSettings(seed=0, steps=7, batch_size=8, n_heldout=32, target_accuracy=None)
    _, info = load_or_warm_start(tmp_path, tokenizer, train, heldout, fixed)
    assert info["steps_done"] == 7


def test_warm_start_cache_is_reused_only_for_the_same_settings(tmp_path, tokenizer):
    train, heldout = split_problems(seed=0, n_heldout=32)
    settings = WarmStartSettings(seed=0, steps=5, batch_size=8, n_heldout=32)
    model, info = load_or_warm_start(tmp_path, tokenizer, train, heldout, settings)
    cached, cached_info = load_or_warm_start(tmp_path, tokenizer, train, heldout, settings)
    assert (info["cached"], cached_info["cached"]) == (False, True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cached.state_dict().values()))
    assert cached_info["heldout_accuracy"] == info["heldout_accuracy"] == greedy_accuracy(cached, tokenizer, heldout)
    meta = json.loads((tmp_path / "seed-0" / "warmstart.json").read_text())
    assert meta["settings"]["steps"] == 5
    _, changed = load_or_warm_start(tmp_path, tokenizer, train, heldout, WarmStartSettings(seed=0, steps=6, batch_size=8,
                                                                                          n_heldout=32))
    assert changed["cached"] is False


def test_unreadable_cache_is_retrained_not_trusted(tmp_path, tokenizer):
    train, heldout = split_problems(seed=0, n_heldout=32)
    settings = WarmStartSettings(seed=0, steps=3, batch_size=8, n_heldout=32)
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "warmstart.json").write_text("{not json")
    _, info = load_or_warm_start(tmp_path, tokenizer, train, heldout, settings)
    assert info["cached"] is False


@pytest.mark.slow
def test_run_demo_writes_a_monitored_run_with_held_out_accuracy_and_reuses_the_warm_start(tmp_path):
    from entropymon.demo import run_demo
    from entropymon.demo.run import CACHE_FOLDER
    from entropymon.log.reader import read_run

    lines: list[str] = []
    kwargs = dict(steps=4, logdir=tmp_path, seed=0, eval_every=3, print_every=2, warmstart_steps=20, write=lines.append)
    path = run_demo(run="first", dashboard=False, **kwargs)
    run = read_run(path)
    steps = run.step_metrics.set_index("step")
    assert sorted(steps["eval_accuracy"].dropna().index) == [0, 3, 4]  # before RL, every 3 steps, the last step
    assert steps.loc[0, "eval_accuracy"] == run.meta["config"]["demo"]["warmstart_heldout_accuracy"]
    assert steps.loc[[1, 2, 3, 4], "entropy_mean"].notna().all()
    assert (tmp_path / CACHE_FOLDER / "seed-0" / "warmstart.json").is_file()
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["2/4", "4/4"]
    assert any(line.startswith("next: entropymon summary") for line in lines)

    lines.clear()
    again = run_demo(run="second", dashboard=True, host="127.0.0.1", port=0, keep_serving=False, **kwargs)
    assert any("warm start done (cache)" in line for line in lines)
    assert any(line.startswith("dashboard: http://127.0.0.1:") for line in lines)
    first, second = read_run(path).step_metrics, read_run(again).step_metrics  # same seed, same run
    np.testing.assert_array_equal(first["entropy_mean"].to_numpy(), second["entropy_mean"].to_numpy())
    np.testing.assert_array_equal(first["eval_accuracy"].to_numpy(), second["eval_accuracy"].to_numpy())
