"""The merchant console (Streamlit): reads the shop's API with a staff token, holds no business logic."""
