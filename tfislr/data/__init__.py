"""tfislr.data"""
