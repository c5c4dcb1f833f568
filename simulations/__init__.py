"""simulations: ground-truth f-influence from many retrains of convex models (METHOD §5).

Modules: :mod:`~simulations.recipes` (training recipes), :mod:`~simulations.data` (data
sources), :mod:`~simulations.models` (losses), :mod:`~simulations.engine` (the batched SGD
engine and its observer hook), :mod:`~simulations.reference` (one-model reference),
:mod:`~simulations.candidates`, :mod:`~simulations.targets`, :mod:`~simulations.truth`
(ground truth), :mod:`~simulations.scaleout` (joblib/Dask, resumable chunks),
:mod:`~simulations.oracle` (exact noisy-GD laws), :mod:`~simulations.study` (``finf
simulate``), :mod:`~simulations.benchmark` (``finf bench retrain``).
"""

from simulations.data import Dataset, DataSpec, load_dataset
from simulations.engine import DivergenceError, StepInfo, TrainContext, train
from simulations.recipes import InitLaw, Recipe, Schedule
from simulations.reference import train_reference
from simulations.targets import Target, parse_target
from simulations.truth import GroundTruth, TruthJob, ground_truth

__all__ = [
    "DataSpec", "Dataset", "DivergenceError", "GroundTruth", "InitLaw", "Recipe", "Schedule",
    "StepInfo", "Target", "TrainContext", "TruthJob", "ground_truth", "load_dataset",
    "parse_target", "train", "train_reference",
]
