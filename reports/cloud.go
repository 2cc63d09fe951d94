package reports

// CloudName is the display name of a run's cloud (RunMeta.Cloud): the
// service the run was judged against. "" for a report without one.
func CloudName(cloud string) string {
	switch cloud {
	case "":
		return ""
	case "azure":
		return "Azure IoT Hub (reference hub)"
	case "aws":
		return "AWS IoT Core (reference AWS IoT endpoint)"
	}
	return cloud
}
