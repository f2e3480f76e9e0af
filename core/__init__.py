"""Engine of the multimodal sentiment dashboard. No Streamlit import anywhere in here."""
