from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

TEST_EXTRAS = [
    "pytest>=8", "pytest-timeout>=2.2", "openai>=1.100", "anthropic>=0.60",
    "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29", "schemathesis>=3.30", "aiosmtpd>=1.4", "playwright>=1.40",
    "moto[server]>=5.0",
]

setup(
    name="onekeyllm",
    version="0.1.0",
    description="One API key, every model: a self-hosted LLM gateway with budgets and a notebook extension.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["service", "service.*", "notebook_ext", "notebook_ext.*"]),
    package_data={"service": ["data/*.json", "static/*", "static/console/*", "static/console/js/*",
                              "static/console/vendor/*"]},
    install_requires=REQUIREMENTS,
    extras_require={"test": TEST_EXTRAS},
    entry_points={"console_scripts": ["onekeyllm=service.cli:main"]},
)
