"""Raw data: loading (RecBole atomic, GroupLens, CSV/Parquet), fetching and splitting."""
from rrec_core.data.loaders import DataFormatError, Dataset, load_dataset

__all__ = ["DataFormatError", "Dataset", "load_dataset"]
