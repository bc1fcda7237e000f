"""Packages, and the shipped configs as package data: `configs/` (the checkout's top level) installs as
`dareu/configs/`, so a wheel runs with exactly the checkout's defaults. Metadata lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["dareu*", "attribution*", "rl*"]) + ["dareu.configs"],
      package_dir={"dareu.configs": "configs"},
      package_data={"dareu.configs": ["*/*.yaml", "*/*.txt"]})
