"""`python -m featureplane.cli`: the `featureplane` console script."""

from featureplane.cli import main

if __name__ == "__main__":
    main()
