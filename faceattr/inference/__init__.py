"""Photo to results: image reading, face detection, alignment, prediction, video, drawing."""
