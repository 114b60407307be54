"""The standard normal distribution from the standard library (no scipy import at start-up)."""

from statistics import NormalDist

STD_NORMAL = NormalDist()
