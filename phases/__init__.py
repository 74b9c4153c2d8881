"""Phase implementations behind one small interface (`phases.base.Phase`), and the ordered registry."""

from phases.base import Outcome, Phase, PhaseContext, Step
from phases.registry import PHASE_NAMES, build_phases

__all__ = ["PHASE_NAMES", "Outcome", "Phase", "PhaseContext", "Step", "build_phases"]
