"""Building the served card: a broken card-state file is one clear error, not a traceback."""

from pathlib import Path

import pytest

from rig.card.emv_state import CardState
from rig.card.host import CardHostError, build
from rig.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]


def test_corrupt_state_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "visa-signature.json").write_text("{not json")
    with pytest.raises(CardHostError) as exc:
        build(ROOT / "cardprofiles" / "visa-signature.yaml", state_dir=tmp_path)
    assert "visa-signature.json" in str(exc.value) and "delete it" in str(exc.value)


def test_state_of_another_card_is_refused(tmp_path: Path) -> None:
    other = load_profile(ROOT / "cardprofiles" / "mc-debit-cda.yaml")
    CardState.fresh(other, tmp_path / "visa-signature.json").save()
    with pytest.raises(CardHostError, match="visa-signature"):
        build(ROOT / "cardprofiles" / "visa-signature.yaml", state_dir=tmp_path)
