"""tfislr.training"""
