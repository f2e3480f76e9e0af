"""Helpers that serve only the Streamlit pages in `app_pages/`: Plotly figures (`charts`,
`correction_charts`), summaries of a scored table (`batch_report`), uploaded files (`uploads`), the
per-process engine (`session`) and the example pairs (`examples`). None of them imports Streamlit,
so tests call them directly. Import from the modules; this package re-exports nothing."""
