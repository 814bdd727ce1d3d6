"""promote takes its budgets in the one unit of every tool: points over fp32, or percent."""

from __future__ import annotations

import pytest

from sweep.promote.cli import parse_args


def test_budgets_in_points_and_percent():
    assert parse_args(["--max-wer-delta", "0.5"]).max_wer_delta == 0.5
    assert parse_args(["--max-wer", "12.5"]).max_wer == 12.5
    assert parse_args(["--max-wer-delta", "0.01pt"]).max_wer_delta == 0.01


@pytest.mark.parametrize(("args", "said"), [
    (["--max-wer-delta", "0.005"], "pass --max-wer-delta 0.5"),
    (["--max-wer", "0.18"], "pass --max-wer 18"),
    (["--max-wer-delta", "0.5%"], "percentage points, not percent"),
])
def test_a_value_in_the_other_unit_is_refused_before_any_store(args: list[str], said: str,
                                                                capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        parse_args(args)
    assert exc.value.code == 2 and said in capsys.readouterr().err
