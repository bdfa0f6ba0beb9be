"""tfislr.model"""
