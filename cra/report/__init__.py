"""`cra report`: the whole pipeline in one self-contained, offline HTML file."""
