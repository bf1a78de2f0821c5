-- Orthanc auto-route to MarrowMap (the dev PACS in docker-compose; also the README example).
-- Every stable series (no new instance for StableAge seconds) that holds MR *images* is sent to
-- the DICOM modality "marrowmap" (DicomModalities: ["MARROWMAP", "<listener host>", 11112]).
-- Never forwarded, so MarrowMap's results are never analysed again:
--   * anything that is not an MR image SOP class (MarrowMap's SR, SEG, Parametric Map, KOS and
--     Secondary Capture results, whose overlays keep Modality MR; reports, presentation states);
--   * MarrowMap's own series (Manufacturer "MarrowMap");
--   * derived secondary images (ImageType DERIVED\SECONDARY: reformats, screen captures).
-- Derived primary images (e.g. Dixon water maps) are acquisitions and are forwarded.
-- The MarrowMap listener applies the same rules again (service/routing.py).

local MR_IMAGE_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.4'] = true,    -- MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.1'] = true,  -- Enhanced MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.4'] = true,  -- Legacy Converted Enhanced MR Image Storage
}

local function trim(s)
  return (s or ''):gsub('^%s+', ''):gsub('%s+$', '')
end

function IsMarrowMapInput(seriesId, tags)
  if tags['Modality'] ~= 'MR' or trim(tags['Manufacturer']):lower() == 'marrowmap' then
    return false
  end
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 then
    return false
  end
  local instance = '/instances/' .. instances[1]['ID']
  local sopClass = trim(RestApiGet(instance .. '/metadata/SopClassUid'))
  if not MR_IMAGE_CLASSES[sopClass] then
    return false
  end
  local imageType = ParseJson(RestApiGet(instance .. '/simplified-tags'))['ImageType'] or ''
  return not trim(imageType):upper():match('^DERIVED\\SECONDARY')
end

function OnStableSeries(seriesId, tags, metadata)
  if IsMarrowMapInput(seriesId, tags) then
    RestApiPost('/modalities/marrowmap/store',
                DumpJson({ Resources = { seriesId }, Asynchronous = true }, true))
  end
end
